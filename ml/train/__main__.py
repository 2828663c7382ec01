from ml.train.cli import run

run()
