"""What every layer of falign stands on: where things live (``paths``), writes a reader never sees
half done (``atomic_files``), and the CPU memory allocator's settings (``memory``)."""
