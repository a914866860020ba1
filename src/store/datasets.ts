/**
 * Account datasets (datasetCreate, datasetList, ... and the RepliedAddresses dataset
 * messageSubmit fills): named, `/`-nested sets of entries, each entry a name with string
 * attributes. Owned by the datasets service (src/services/datasets.ts).
 */
export interface DatasetStore {}
