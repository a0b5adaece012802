"""Tools that train and judge a codec: objective, trainer, growth, evaluation and their data mix.

Only ``astropt codec ...`` and people making a new shipped codec need these; everything
else uses ``astropt.codec``.
"""
