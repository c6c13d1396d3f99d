"""flatprint.synth: synthetic releases in the real file names and schemas, for tests and benchmarks.

``generator`` writes the seven tables (:func:`synthesize`), ``morphology`` the skeletons, ROI volumes,
meshes and segmentation, ``rois`` the fixed synthetic ROI hierarchy and its label volumes. What a real
release looks like (schemas, manifest, ROI hierarchy rules) stays in :mod:`flatprint.release`; nothing
outside this package relies on the synthetic numbering.
"""

from __future__ import annotations

from flatprint.synth.generator import synthesize

__all__ = ["synthesize"]
