"""The final report: one HTML page (html) of sections, one module per stage that the report covers."""

import matplotlib

# Figures are drawn without a display (cluster nodes have none); set before any section imports pyplot.
matplotlib.use("Agg")
