"""The operator's tools, the top floor: the ``chainsync`` command line (:mod:`tools.cli`), the demo, the
historical importer, the forecast backtest, the chain generator and the offline-sync simulator.

They drive the processes below them (the API, the pipeline) and the shared core (``chainsync``); nothing
below imports them.
"""
