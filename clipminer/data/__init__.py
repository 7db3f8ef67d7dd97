"""Datasets: image folders, UCF-101 splits, folder-per-class videos."""
