from django.urls import path

from marketdata.api import views

market = "markets/<str:exchange>/<str:symbol>"

urlpatterns = [
    path("exchanges", views.ExchangesView.as_view(), name="md-exchanges"),
    path("instruments", views.InstrumentsView.as_view(), name="md-instruments"),
    # Before the per-market routes, which would take "consolidated" for an exchange.
    path(
        "markets/consolidated/<str:pair>/bbo",
        views.ConsolidatedBboView.as_view(),
        name="md-consolidated-bbo",
    ),
    path(
        "markets/consolidated/<str:pair>/book",
        views.ConsolidatedBookView.as_view(),
        name="md-consolidated-book",
    ),
    path(f"{market}/ticker", views.TickerView.as_view(), name="md-ticker"),
    path(f"{market}/trades", views.TradesView.as_view(), name="md-trades"),
    path(f"{market}/candles", views.CandlesView.as_view(), name="md-candles"),
    path(f"{market}/book", views.BookView.as_view(), name="md-book"),
]
