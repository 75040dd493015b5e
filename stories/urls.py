from django.urls import path

from stories import views

app_name = "stories"

urlpatterns = [
    path("", views.story_list, name="list"),
    path("<int:story_id>/", views.story_detail, name="detail"),
    path("<int:story_id>/edit/", views.story_edit, name="edit"),
    path("<int:story_id>/delete/", views.story_delete, name="delete"),
    path("<int:story_id>/pages/add/", views.page_add, name="page_add"),
    path("pages/<int:page_id>/", views.page_card, name="page_card"),
    path("pages/<int:page_id>/save/", views.page_save, name="page_save"),
    path("pages/<int:page_id>/delete/", views.page_delete, name="page_delete"),
    path("pages/<int:page_id>/move/<str:direction>/", views.page_move, name="page_move"),
    path("pages/<int:page_id>/generate/", views.page_generate, name="page_generate"),
    path("pages/<int:page_id>/try-again/", views.page_try_again, name="page_try_again"),
    path("pages/<int:page_id>/jobs/<int:job_id>/", views.page_job, name="page_job"),
    path("pages/<int:page_id>/jobs/<int:job_id>/stop/", views.page_stop, name="page_stop"),
    path("pages/<int:page_id>/jobs/<int:job_id>/undo/", views.page_undo, name="page_undo"),
    path("pages/<int:page_id>/jobs/<int:job_id>/pick/", views.page_pick, name="page_pick"),
]
