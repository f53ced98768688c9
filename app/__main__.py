from parhelia.app.cli import run

run()
