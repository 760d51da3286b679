"""`mgctag explain`: the numbers behind one file's genres (analysis.py), musicnn filter
auralisation (auralise.py), and the HTML/PNG report of both (report.py)."""
