from trainctl.cli import app

app(prog_name="trainctl")
