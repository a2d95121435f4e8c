"""The schema with every default (see mmscale/config.py). Start new configs from this."""

from mmscale.config import base_config


def get_config(arg=None):
  del arg
  return base_config()
