from django.apps import AppConfig


class Q2CConfig(AppConfig):
    name = "q2c"
    verbose_name = "Quote to cash"
