"""The model side of PART, modality-agnostic: the plugin interface (``modality``), patch geometry
(``geometry``), the encoder (``backbone``), relative heads (``heads``), pair sampling (``pairs``),
the PART loss for any encoder (``loss``), the finetuning classifier (``classifier``) and the
pretext methods (``methods``)."""
