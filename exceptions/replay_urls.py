from django.urls import path

from exceptions import views

urlpatterns = [
    path("", views.replay_list, name="replay-list"),
    path("new/", views.replay_create, name="replay-create"),
    path("<int:pk>/", views.replay_detail, name="replay-detail"),
    path("<int:pk>/approve/", views.replay_approve, name="replay-approve"),
    path("<int:pk>/reject/", views.replay_reject, name="replay-reject"),
]
