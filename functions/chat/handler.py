"""AWS Lambda entry through Mangum, for the chat function's non-streaming routes (/api/model, /v1 with
stream=false). Mangum buffers every response, so streams arrive whole: deployed, the chat image runs
uvicorn behind AWS Lambda Web Adapter instead (see its Dockerfile), which streams through a Function URL."""

from mangum import Mangum

from functions.chat.app import app
from shared.migrate import upgrade_on_cold_start

upgrade_on_cold_start()
handler = Mangum(app, lifespan="off")
