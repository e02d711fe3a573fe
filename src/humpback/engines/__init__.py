"""Inference engines: one interface (base.Engine), several backends; `loader.load_engine` opens one."""
