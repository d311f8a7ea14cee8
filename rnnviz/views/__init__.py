"""What a person looks at: colours, offline HTML heatmaps, notebook display and the Dash dashboard.

``colours`` holds the colour scales and ranges the export and the dashboard share; ``export`` writes
self-contained HTML heatmaps; ``display`` shows them in Jupyter; ``dashboard`` is the Dash app. Views read the
store and the analysis, never each other.
"""
