"""The web page for trying a trained checkpoint (``streamlit run app.py -- --checkpoint PATH``)."""
