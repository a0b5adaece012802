"""Serving trained models: the inference runtime (one model cache, batched requests for
``/reconstruct``, ``/embed`` and ``/predict``) and its wire form for the inference queue.

Above :mod:`astropt.finetune` (a fine-tuned model's predictions) and :mod:`astropt.inference`
(the pipelines a request runs); nothing in the library imports it.
"""
