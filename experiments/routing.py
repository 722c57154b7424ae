from django.urls import path

from datasets_app.consumers import DatasetTaskConsumer
from experiments.consumers import JobConsumer
from experiments.evaluation.consumers import EvaluationConsumer
from experiments.human_eval.consumers import HumanEvalConsumer
from experiments.workflows.consumers import WorkflowConsumer

websocket_urlpatterns = [
    path("ws/jobs/<str:job_id>/", JobConsumer.as_asgi()),
    path("ws/workflows/<str:workflow_id>/", WorkflowConsumer.as_asgi()),
    path("ws/evaluations/<str:evaluation_id>/", EvaluationConsumer.as_asgi()),
    path("ws/dataset-tasks/<str:task_id>/", DatasetTaskConsumer.as_asgi()),
    path("ws/human-eval/<str:task_id>/", HumanEvalConsumer.as_asgi()),
]
