include $(sort $(wildcard $(BR2_EXTERNAL_EMBER_PATH)/package/*/*.mk))
