"""The book's own chapters, the ones that reproduce no paper: foundations, landmarks and metrics,
SynthFace, the photo aligner, the comparison of every method, and the aligners on your own photo. Each registers here,
as a paper's package registers itself (:mod:`falign.kit.registry`)."""

from falign.kit.registry import register

register(f"{__name__}.foundations", title="Foundations", order=10, experiment=f"{__name__}.foundations",
         paper=False)
register(f"{__name__}.landmarks", title="Landmarks and metrics", order=20, experiment=f"{__name__}.landmarks",
         paper=False)
register(f"{__name__}.synthface", title="SynthFace, the default data", order=30,
         experiment=f"{__name__}.synthface", paper=False)
register(f"{__name__}.photo", title="The photo aligner", order=70, experiment=f"{__name__}.photo", paper=False)
register(f"{__name__}.compare", title="Every method on one protocol", order=80, experiment=f"{__name__}.compare",
         paper=False)
register(f"{__name__}.aligner", title="Use it on your own photo", order=90, experiment=f"{__name__}.aligner",
         paper=False)
