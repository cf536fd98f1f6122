"""SynthPIE: faces rendered from random 3D heads, with identity, pose, illumination, accessory and
occlusion known for every image; the built-in stand-in for Multi-PIE and CAS-PEAL-R1."""

from facedata.synth.dataset import render_faceset
from facedata.synth.presets import ACCESSORIES, PRESETS, SynthConfig, synth_config

__all__ = ["ACCESSORIES", "PRESETS", "SynthConfig", "render_faceset", "synth_config"]
