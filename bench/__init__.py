"""Story-Sprout's benchmark harness (`make bench`, `python -m bench --help`).

It starts its own Temporal dev server, fake model, worker and site, drives the real code path
(an author's POST to the generate view) and writes bench/results/latest.json and a chart. The
method and the latest numbers are in docs/performance.md.
"""
