from django.shortcuts import get_object_or_404, render

from .models import Dog


def dog_list(request):
    """Every dog, kept live through the collection stream /dog/."""
    return render(request, "dog_list.html", {"dogs": Dog.objects.all()})


def dog_profile(request, pk):
    """The seed's dog profile page: record updates, notes and the status pulse on /dog/<id>."""
    dog = get_object_or_404(Dog, pk=pk)
    return render(request, "dog_profile.html", {"dog": dog})


def dog_events(request, pk):
    """The dog over Server-Sent Events: EventSource on the same path /dog/<id>."""
    dog = get_object_or_404(Dog, pk=pk)
    return render(request, "dog_events.html", {"dog": dog})
