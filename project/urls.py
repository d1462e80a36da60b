from django.contrib import admin
from django.urls import path

from project.dogs import views

urlpatterns = [
    path("", views.dog_list, name="dog-list"),
    path("dogs/<int:pk>/", views.dog_profile, name="dog-profile"),
    path("dogs/<int:pk>/events/", views.dog_events, name="dog-events"),
    path("admin/", admin.site.urls),
]
