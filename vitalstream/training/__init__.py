"""Training and validation of the sepsis early-warning model on PhysioNet ICU data.

One concern per module: `physionet` reads the challenge files, `utility` is the 2019
challenge's utility score, `baseline` is vitals-only NEWS2 on the same rows, `dataset`
turns stays into model rows through the one feature engine, `fit` trains, `evaluation`
computes every reported figure and `report` writes them as JSON and HTML.
"""
