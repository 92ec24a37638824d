"""Countries for the phone region of a row (SPEC 9): ISO 3166 alpha-2 and alpha-3 codes and English names.

The table is ISO 3166-1 as the ``pycountry`` package (its 26.2 release) lists it, with the
common short names people write in contact files (``UK``, ``USA``, ``South Korea``, ``Vietnam``).
:func:`region_of` answers any case and ignores spaces and punctuation around the value.
"""

from __future__ import annotations

import functools
import re

__all__ = ["region_of"]

_NOT_LETTERS = re.compile(r"[^a-z]+")

_TABLE = """\
AD AND Andorra|Principality of Andorra
AE ARE United Arab Emirates|UAE|Emirates
AF AFG Afghanistan|Islamic Republic of Afghanistan
AG ATG Antigua and Barbuda
AI AIA Anguilla
AL ALB Albania|Republic of Albania
AM ARM Armenia|Republic of Armenia
AO AGO Angola|Republic of Angola
AQ ATA Antarctica
AR ARG Argentina|Argentine Republic
AS ASM American Samoa
AT AUT Austria|Republic of Austria
AU AUS Australia
AW ABW Aruba
AX ALA Åland Islands
AZ AZE Azerbaijan|Republic of Azerbaijan
BA BIH Bosnia and Herzegovina|Republic of Bosnia and Herzegovina
BB BRB Barbados
BD BGD Bangladesh|People's Republic of Bangladesh
BE BEL Belgium|Kingdom of Belgium
BF BFA Burkina Faso
BG BGR Bulgaria|Republic of Bulgaria
BH BHR Bahrain|Kingdom of Bahrain
BI BDI Burundi|Republic of Burundi
BJ BEN Benin|Republic of Benin
BL BLM Saint Barthélemy
BM BMU Bermuda
BN BRN Brunei Darussalam|Brunei
BO BOL Bolivia|Bolivia, Plurinational State of|Plurinational State of Bolivia
BQ BES Bonaire, Sint Eustatius and Saba
BR BRA Brazil|Federative Republic of Brazil
BS BHS Bahamas|Commonwealth of the Bahamas|The Bahamas
BT BTN Bhutan|Kingdom of Bhutan
BV BVT Bouvet Island
BW BWA Botswana|Republic of Botswana
BY BLR Belarus|Republic of Belarus
BZ BLZ Belize
CA CAN Canada
CC CCK Cocos (Keeling) Islands
CD COD Congo, The Democratic Republic of the|DR Congo|Democratic Republic of the Congo|Congo-Kinshasa
CF CAF Central African Republic
CG COG Congo|Republic of the Congo|Congo-Brazzaville
CH CHE Swiss Confederation|Switzerland
CI CIV Côte d'Ivoire|Republic of Côte d'Ivoire|Ivory Coast|Cote d'Ivoire
CK COK Cook Islands
CL CHL Chile|Republic of Chile
CM CMR Cameroon|Republic of Cameroon
CN CHN China|People's Republic of China
CO COL Colombia|Republic of Colombia
CR CRI Costa Rica|Republic of Costa Rica
CU CUB Cuba|Republic of Cuba
CV CPV Cabo Verde|Republic of Cabo Verde|Cape Verde
CW CUW Curaçao
CX CXR Christmas Island
CY CYP Cyprus|Republic of Cyprus
CZ CZE Czech Republic|Czechia
DE DEU Federal Republic of Germany|Germany
DJ DJI Djibouti|Republic of Djibouti
DK DNK Denmark|Kingdom of Denmark
DM DMA Commonwealth of Dominica|Dominica
DO DOM Dominican Republic
DZ DZA Algeria|People's Democratic Republic of Algeria
EC ECU Ecuador|Republic of Ecuador
EE EST Estonia|Republic of Estonia
EG EGY Arab Republic of Egypt|Egypt
EH ESH Western Sahara
ER ERI Eritrea|the State of Eritrea
ES ESP Kingdom of Spain|Spain
ET ETH Ethiopia|Federal Democratic Republic of Ethiopia
FI FIN Finland|Republic of Finland
FJ FJI Fiji|Republic of Fiji
FK FLK Falkland Islands (Malvinas)
FM FSM Federated States of Micronesia|Micronesia, Federated States of|Micronesia
FO FRO Faroe Islands
FR FRA France|French Republic
GA GAB Gabon|Gabonese Republic
GB GBR United Kingdom|United Kingdom of Great Britain and Northern Ireland|UK|U.K.|Great Britain|Britain
GB GBR England|Scotland|Wales|Northern Ireland
GD GRD Grenada
GE GEO Georgia
GF GUF French Guiana
GG GGY Guernsey
GH GHA Ghana|Republic of Ghana
GI GIB Gibraltar
GL GRL Greenland
GM GMB Gambia|Republic of the Gambia|The Gambia
GN GIN Guinea|Republic of Guinea
GP GLP Guadeloupe
GQ GNQ Equatorial Guinea|Republic of Equatorial Guinea
GR GRC Greece|Hellenic Republic
GS SGS South Georgia and the South Sandwich Islands
GT GTM Guatemala|Republic of Guatemala
GU GUM Guam
GW GNB Guinea-Bissau|Republic of Guinea-Bissau
GY GUY Guyana|Republic of Guyana
HK HKG Hong Kong|Hong Kong Special Administrative Region of China
HM HMD Heard Island and McDonald Islands
HN HND Honduras|Republic of Honduras
HR HRV Croatia|Republic of Croatia
HT HTI Haiti|Republic of Haiti
HU HUN Hungary
ID IDN Indonesia|Republic of Indonesia
IE IRL Ireland
IL ISR Israel|State of Israel
IM IMN Isle of Man
IN IND India|Republic of India
IO IOT British Indian Ocean Territory
IQ IRQ Iraq|Republic of Iraq
IR IRN Iran|Iran, Islamic Republic of|Islamic Republic of Iran
IS ISL Iceland|Republic of Iceland
IT ITA Italian Republic|Italy
JE JEY Jersey
JM JAM Jamaica
JO JOR Hashemite Kingdom of Jordan|Jordan
JP JPN Japan
KE KEN Kenya|Republic of Kenya
KG KGZ Kyrgyz Republic|Kyrgyzstan
KH KHM Cambodia|Kingdom of Cambodia
KI KIR Kiribati|Republic of Kiribati
KM COM Comoros|Union of the Comoros
KN KNA Saint Kitts and Nevis
KP PRK Democratic People's Republic of Korea|Korea, Democratic People's Republic of|North Korea|Korea, North
KR KOR Korea, Republic of|South Korea|Korea|Republic of Korea|Korea, South
KW KWT Kuwait|State of Kuwait
KY CYM Cayman Islands
KZ KAZ Kazakhstan|Republic of Kazakhstan
LA LAO Lao People's Democratic Republic|Laos
LB LBN Lebanese Republic|Lebanon
LC LCA Saint Lucia
LI LIE Liechtenstein|Principality of Liechtenstein
LK LKA Democratic Socialist Republic of Sri Lanka|Sri Lanka
LR LBR Liberia|Republic of Liberia
LS LSO Kingdom of Lesotho|Lesotho
LT LTU Lithuania|Republic of Lithuania
LU LUX Grand Duchy of Luxembourg|Luxembourg
LV LVA Latvia|Republic of Latvia
LY LBY Libya
MA MAR Kingdom of Morocco|Morocco
MC MCO Monaco|Principality of Monaco
MD MDA Moldova|Moldova, Republic of|Republic of Moldova
ME MNE Montenegro
MF MAF Saint Martin (French part)
MG MDG Madagascar|Republic of Madagascar
MH MHL Marshall Islands|Republic of the Marshall Islands
MK MKD North Macedonia|Republic of North Macedonia|Macedonia
ML MLI Mali|Republic of Mali
MM MMR Myanmar|Republic of Myanmar
MN MNG Mongolia
MO MAC Macao|Macao Special Administrative Region of China|Macau
MP MNP Commonwealth of the Northern Mariana Islands|Northern Mariana Islands
MQ MTQ Martinique
MR MRT Islamic Republic of Mauritania|Mauritania
MS MSR Montserrat
MT MLT Malta|Republic of Malta
MU MUS Mauritius|Republic of Mauritius
MV MDV Maldives|Republic of Maldives
MW MWI Malawi|Republic of Malawi
MX MEX Mexico|United Mexican States
MY MYS Malaysia
MZ MOZ Mozambique|Republic of Mozambique
NA NAM Namibia|Republic of Namibia
NC NCL New Caledonia
NE NER Niger|Republic of the Niger
NF NFK Norfolk Island
NG NGA Federal Republic of Nigeria|Nigeria
NI NIC Nicaragua|Republic of Nicaragua
NL NLD Kingdom of the Netherlands|Netherlands|Holland|The Netherlands
NO NOR Kingdom of Norway|Norway
NP NPL Federal Democratic Republic of Nepal|Nepal
NR NRU Nauru|Republic of Nauru
NU NIU Niue
NZ NZL New Zealand
OM OMN Oman|Sultanate of Oman
PA PAN Panama|Republic of Panama
PE PER Peru|Republic of Peru
PF PYF French Polynesia
PG PNG Independent State of Papua New Guinea|Papua New Guinea
PH PHL Philippines|Republic of the Philippines|The Philippines
PK PAK Islamic Republic of Pakistan|Pakistan
PL POL Poland|Republic of Poland
PM SPM Saint Pierre and Miquelon
PN PCN Pitcairn
PR PRI Puerto Rico
PS PSE Palestine, State of|the State of Palestine|Palestine
PT PRT Portugal|Portuguese Republic
PW PLW Palau|Republic of Palau
PY PRY Paraguay|Republic of Paraguay
QA QAT Qatar|State of Qatar
RE REU Réunion
RO ROU Romania
RS SRB Republic of Serbia|Serbia
RU RUS Russian Federation|Russia
RW RWA Rwanda|Rwandese Republic
SA SAU Kingdom of Saudi Arabia|Saudi Arabia
SB SLB Solomon Islands
SC SYC Republic of Seychelles|Seychelles
SD SDN Republic of the Sudan|Sudan
SE SWE Kingdom of Sweden|Sweden
SG SGP Republic of Singapore|Singapore
SH SHN Saint Helena, Ascension and Tristan da Cunha
SI SVN Republic of Slovenia|Slovenia
SJ SJM Svalbard and Jan Mayen
SK SVK Slovak Republic|Slovakia
SL SLE Republic of Sierra Leone|Sierra Leone
SM SMR Republic of San Marino|San Marino
SN SEN Republic of Senegal|Senegal
SO SOM Federal Republic of Somalia|Somalia
SR SUR Republic of Suriname|Suriname
SS SSD Republic of South Sudan|South Sudan
ST STP Democratic Republic of Sao Tome and Principe|Sao Tome and Principe
SV SLV El Salvador|Republic of El Salvador
SX SXM Sint Maarten (Dutch part)
SY SYR Syria|Syrian Arab Republic
SZ SWZ Eswatini|Kingdom of Eswatini|Swaziland
TC TCA Turks and Caicos Islands
TD TCD Chad|Republic of Chad
TF ATF French Southern Territories
TG TGO Togo|Togolese Republic
TH THA Kingdom of Thailand|Thailand
TJ TJK Republic of Tajikistan|Tajikistan
TK TKL Tokelau
TL TLS Democratic Republic of Timor-Leste|Timor-Leste
TM TKM Turkmenistan
TN TUN Republic of Tunisia|Tunisia
TO TON Kingdom of Tonga|Tonga
TR TUR Republic of Türkiye|Türkiye|Turkey
TT TTO Republic of Trinidad and Tobago|Trinidad and Tobago
TV TUV Tuvalu
TW TWN Taiwan|Taiwan, Province of China
TZ TZA Tanzania|Tanzania, United Republic of|United Republic of Tanzania
UA UKR Ukraine
UG UGA Republic of Uganda|Uganda
UM UMI United States Minor Outlying Islands
US USA United States|United States of America|USA|U.S.|U.S.A.|America
UY URY Eastern Republic of Uruguay|Uruguay
UZ UZB Republic of Uzbekistan|Uzbekistan
VA VAT Holy See (Vatican City State)|Vatican|Vatican City
VC VCT Saint Vincent and the Grenadines
VE VEN Bolivarian Republic of Venezuela|Venezuela|Venezuela, Bolivarian Republic of
VG VGB British Virgin Islands|Virgin Islands, British
VI VIR Virgin Islands of the United States|Virgin Islands, U.S.
VN VNM Socialist Republic of Viet Nam|Viet Nam|Vietnam
VU VUT Republic of Vanuatu|Vanuatu
WF WLF Wallis and Futuna
WS WSM Independent State of Samoa|Samoa
YE YEM Republic of Yemen|Yemen
YT MYT Mayotte
ZA ZAF Republic of South Africa|South Africa
ZM ZMB Republic of Zambia|Zambia
ZW ZWE Republic of Zimbabwe|Zimbabwe
"""


def _key(value: str) -> str:
    return _NOT_LETTERS.sub("", value.casefold())


@functools.cache
def _regions() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in _TABLE.splitlines():
        alpha2, alpha3, names = line.split(" ", 2)
        for name in (alpha2, alpha3, *names.split("|")):
            found.setdefault(_key(name), alpha2)
    return found


@functools.lru_cache(maxsize=1024)
def region_of(value: str) -> str | None:
    """The ISO 3166 alpha-2 region a country cell names, or None (``"gbr"``, ``"United Kingdom"`` -> ``"GB"``)."""
    key = _key(value)
    if not key:
        return None
    return _regions().get(key)
