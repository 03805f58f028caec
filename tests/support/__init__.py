"""Helpers the tests share: processes, fixtures, data of the scenarios."""
