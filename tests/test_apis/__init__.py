"""Tests of mdrl_plugin.apis."""
