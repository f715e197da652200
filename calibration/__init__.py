"""Calibration algorithms over driver interfaces: arrays in, arrays and results out."""
