"""Speech, music and noise over time: the detector (detector.py) in one place, for `mgctag
segments`, its training tools and the benchmarks."""
