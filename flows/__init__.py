import warnings

# The register step's section (a flow parameter here) shadows ABCMeta.register on pydantic's models
# of the flows' parameters: harmless, since no flow parameter model is ever registered as an ABC.
warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)
