"""The benchmarks behind `behavior bench`: the stage suites (suites.py), the engines side by side
(engines.py), the scale curve (scale.py), the API under load (api.py), bundle reloads under load
(reload.py) and the payment notifications (notify.py). They measure the pipeline and the API
from outside; nothing else imports them."""
