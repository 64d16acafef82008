"""Widgets of the console: they display what they are given and emit messages; none calls the core."""
