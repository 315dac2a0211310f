"""The built-in networks' adapters: every module here is one network, named by its file.

Each module defines ``ADAPTER``, a :class:`sparsesel.nets.adapter.BuiltinAdapter`;
:func:`sparsesel.nets.adapter.net_names` lists the modules without importing them and
:func:`sparsesel.nets.adapter.get_adapter` imports one when it is asked for. Adding a network is
its module in :mod:`sparsesel.nets` plus its adapter module here (and tests).
"""
