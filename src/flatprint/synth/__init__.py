"""flatprint.synth: synthetic releases in the real file names and schemas, for tests and benchmarks.

``release`` writes a release directory (:func:`synthesize`) in the schemas of a registered release,
``generator`` draws and writes its seven tables (with ``placement``, ``neurotransmitters`` and
``feather_out``), ``morphology`` the skeletons, ROI volumes, meshes and segmentation, ``rois`` the
fixed synthetic ROI hierarchy and its label volumes, ``levels`` the ROI levels below it. What a real
release looks like (schemas, manifest, ROI hierarchy rules) stays in :mod:`flatprint.release`; nothing
outside this package relies on the synthetic numbering.
"""

from __future__ import annotations

from flatprint.synth.release import synthesize

__all__ = ["synthesize"]
