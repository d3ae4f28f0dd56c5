from django.urls import path

from masterdata import views

urlpatterns = [
    path("accounts/", views.account_list, name="account-list"),
    path("accounts/<str:enterprise_id>/", views.account_detail, name="account-detail"),
    path("duplicates/", views.duplicate_list, name="duplicate-list"),
    path("duplicates/detect/", views.duplicate_detect, name="duplicate-detect"),
    path("duplicates/<int:pk>/", views.duplicate_detail, name="duplicate-detail"),
    path("duplicates/<int:pk>/dismiss/", views.duplicate_dismiss, name="duplicate-dismiss"),
    path("duplicates/groups/", views.duplicate_groups, name="duplicate-groups"),
    path("duplicates/groups/<int:cluster>/", views.duplicate_group, name="duplicate-group"),
    path("duplicates/match-file/", views.match_file, name="match-file"),
    path("merges/", views.merge_list, name="merge-list"),
    path("merges/new/", views.merge_new, name="merge-new"),
    path("merges/<int:pk>/", views.merge_detail, name="merge-detail"),
    path("merges/<int:pk>/approve/", views.merge_approve, name="merge-approve"),
    path("merges/<int:pk>/reject/", views.merge_reject, name="merge-reject"),
    path("merges/<int:pk>/unmerge/", views.merge_unmerge, name="merge-unmerge"),
    path("merges/<int:pk>/push/", views.merge_push_retry, name="merge-push-retry"),
]
