"""Keras -> a .tflite file that app clients run as it is: conversion and graph checks
(``convert``), the file edits and the standard TFLite Metadata (``tflite_edit``, ``metadata``,
``packaging``), reading a file's facts (``tflite_file``), ``quantize`` and its PTQ debugger
(``quantize_debug``). Importing this package imports nothing else.
"""
