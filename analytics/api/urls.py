from django.urls import path

from analytics.api import backtests, options, series

market = "analytics/<str:exchange>/<str:symbol>"

urlpatterns = [
    path(f"{market}/ofi", series.OfiView.as_view(), name="analytics-ofi"),
    path(f"{market}/vpin", series.VpinView.as_view(), name="analytics-vpin"),
    path(f"{market}/volatility", series.VolatilityView.as_view(), name="analytics-volatility"),
    path("options/price", options.OptionsPriceView.as_view(), name="options-price"),
    path(
        "options/implied-volatility",
        options.ImpliedVolatilityView.as_view(),
        name="options-implied-volatility",
    ),
    path("backtests", backtests.BacktestListView.as_view(), name="backtest-list"),
    path("backtests/<int:pk>", backtests.BacktestDetailView.as_view(), name="backtest-detail"),
]
