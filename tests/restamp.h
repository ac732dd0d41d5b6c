/* Tests and fuzz targets edit files whose last 4 bytes are the CRC-32 of everything before them
 * (data sets, models): restamp_crc makes an edited file pass that check again, so that what is
 * behind it gets tested. Needs flowpic.h included first. */
#ifndef FLOWPIC_TEST_RESTAMP_H
#define FLOWPIC_TEST_RESTAMP_H

static inline void restamp_crc(uint8_t *data, size_t size)
{
    uint32_t crc = flowpic_crc32(0, data, size - 4);
    int i;
    for (i = 0; i < 4; i++) data[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
}

#endif
