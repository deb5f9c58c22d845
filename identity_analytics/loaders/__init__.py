"""Loaders: files, the Kratos and Klustr APIs, into staged records and the analytics tables."""
