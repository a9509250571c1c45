"""The BentoML model server (``serving → pipeline``): the champion of every served model spec over HTTP."""
