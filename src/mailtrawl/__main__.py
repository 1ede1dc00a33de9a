from mailtrawl.cli.main import app

app(prog_name="mailtrawl")
