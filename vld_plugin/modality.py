"""Modality labels shared by datasets, samplers, models and evaluation."""
VISIBLE = 0
INFRARED = 1
NAMES = {VISIBLE: "visible", INFRARED: "infrared"}
SHORT = {VISIBLE: "V", INFRARED: "I"}
