"""AWS Lambda entry (API Gateway / Function URL events) through Mangum."""

from mangum import Mangum

from functions.auth.app import app
from shared.migrate import upgrade_on_cold_start

upgrade_on_cold_start()
handler = Mangum(app, lifespan="off")
