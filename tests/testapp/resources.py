from harper_resources import Resource

from .models import Animal, Cat, Gadget, Stamped, Tag


class PublicResource(Resource):
    def allow_read(self, user):
        return True


class GadgetResource(PublicResource):
    model = Gadget


class TagResource(PublicResource):
    model = Tag


class StampedResource(PublicResource):
    model = Stamped


class AnimalResource(PublicResource):
    model = Animal


class CatResource(PublicResource):
    model = Cat
