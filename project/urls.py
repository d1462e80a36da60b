from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import path

from project.dogs import views

urlpatterns = [
    path("", views.dog_list, name="dog-list"),
    path("dogs/<int:pk>/", views.dog_profile, name="dog-profile"),
    path("dogs/<int:pk>/events/", views.dog_events, name="dog-events"),
    path("admin/", admin.site.urls),
]

# With DEBUG, the demo serves its static files (the admin's, harper_resources/client.js) under any
# server, daphne or uvicorn too, not only under runserver; without DEBUG this adds nothing.
urlpatterns += staticfiles_urlpatterns()
