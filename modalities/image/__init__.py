"""Image modality plugin (2-D). Importing ``part.modalities.image.plugin`` (the ``part.modalities``
entry point) registers the modality and the datasets; importing this package registers nothing.
"""
