"""Human preference evaluation: the Token-Shuffle paper's third protocol as a local web app.

Blinded pairs of images (same prompt and seed, two systems) are rated on three questions; votes live in
SQLite next to the run; ``summary`` turns them into win/tie/lose rates, Bradley–Terry strengths and
inter-rater agreement. Modules: ``protocol`` (the questions), ``images`` (which images pair up),
``store`` (SQLite), ``schedule`` (which pair a rater sees next), ``app`` (FastAPI, needs the
``human`` extra), ``summary`` (statistics; imported by the report).
"""
