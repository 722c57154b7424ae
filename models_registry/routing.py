from django.urls import path

from models_registry.consumers import PlaygroundConsumer

websocket_urlpatterns = [
    path("ws/playground/<str:model_id>/<str:version>/", PlaygroundConsumer.as_asgi()),
]
