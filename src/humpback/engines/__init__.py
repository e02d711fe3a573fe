"""Inference engines: one interface (base.Engine), several backends; `loader.open_engine` opens one."""
