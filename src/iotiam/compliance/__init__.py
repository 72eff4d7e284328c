"""The fleet against ETSI EN 303 645, NIST IR 8259A and the EU CRA's Annex I, where
iotiam holds evidence: each requirement with a status and the counts behind it."""
