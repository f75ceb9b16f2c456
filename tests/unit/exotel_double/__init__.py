"""Tests of the Exotel API double (workers.exotel_double)."""
